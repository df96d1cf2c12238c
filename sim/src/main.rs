fn main() -> std::process::ExitCode {
    parc_sim::cli::main()
}
