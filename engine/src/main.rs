fn main() -> std::process::ExitCode {
    weir_engine::cli::main()
}
