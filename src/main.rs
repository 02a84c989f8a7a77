fn main() {
    std::process::exit(drctl::run());
}
