//! Writes the synthetic MNIST-format dataset of the end-to-end tests into a folder:
//! `cargo run -p integration-tests --example make_fixture -- DIR`.
fn main() {
    let dir = std::env::args().nth(1).expect("usage: make_fixture DIR");
    integration_tests::write_synthetic_mnist(std::path::Path::new(&dir), 3000, 500);
}
