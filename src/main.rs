fn main() -> std::process::ExitCode {
    seatgate::cli::main()
}
