// `qins` subcommands. Each add_* registers its options on the CLI11 app and returns the function
// that runs it (exit status).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace qins::cli {

using Runner = std::function<int()>;

Runner add_chat(CLI::App& app);
Runner add_generate(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_inspect(CLI::App& app);
Runner add_fixture(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_pull(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_train(CLI::App& app);
Runner add_serve(CLI::App& app);

// Prints one clear error line to stderr.
void print_error(const std::string& message);

}  // namespace qins::cli
