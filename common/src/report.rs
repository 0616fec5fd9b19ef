pub fn _placeholder(){}
