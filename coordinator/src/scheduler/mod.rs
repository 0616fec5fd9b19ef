//! Who runs what next: the queue of pending jobs ordered by expected duration ([`queue`],
//! [`estimates`]), the leases of running jobs ordered by expiry ([`leases`]), and the workers
//! that can take them ([`workers`]).

pub mod estimates;
pub mod leases;
pub mod queue;
pub mod workers;

pub use estimates::Estimates;
pub use leases::{Lease, LeaseTable};
pub use queue::Queue;
pub use workers::{new_session, Identity, Registry, WorkerEntry};
