// qins tokenize / inspect / fixture.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "commands.h"
#include "qins/runtime/engine.h"
#include "qins/tools/fixture.h"
#include "qins/tools/inspect.h"

namespace qins::cli {

Runner add_tokenize(CLI::App& app) {
  struct Opts {
    std::string model, text;
    bool chat = false, special = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("model", o->model, "A .qins file or a Hugging Face model folder")->required();
  app.add_option("--text", o->text, "Text to tokenize")->required();
  app.add_flag("--chat", o->chat, "Render TEXT as one user turn through the chat template (with the generation prompt)");
  app.add_flag("--special", o->special, "Recognise added-token strings in TEXT (never in --chat turns)");
  return [o]() {
    LoadOptions lo;
    lo.context_length = 16;
    auto engine = Engine::load(o->model, lo);
    const std::vector<int> ids = o->chat ? engine->tokenize_chat({{Role::User, o->text}}, true)
                                         : engine->tokenize(o->text, o->special);
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
    for (int id : ids) std::printf("%d\t%s\n", id, engine->token_piece(id).c_str());
    return 0;
  };
}

Runner add_inspect(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto verify = std::make_shared<bool>(false);
  app.add_option("model", *model, "A .qins file or a Hugging Face model folder")->required();
  app.add_flag("--json", *json, "Machine-readable output");
  app.add_flag("--verify", *verify, ".qins: decode every chunk and check its checksum");
  auto device = std::make_shared<std::string>("auto");
  app.add_option("--device", *device, "Also say where this device choice would run: auto | cpu | cuda | mps | cpu-generic")
      ->capture_default_str()->check(CLI::IsMember({"auto", "cpu", "cuda", "mps", "cpu-generic"}));
  return [=]() {
    const ModelReport r = inspect_model(*model, *verify);
    std::cout << (*json ? r.json : r.text);
    if (!*json && r.text.back() != '\n') std::cout << "\n";
    if (!*json) {
      const DeviceChoice d = resolve_device(*device);
      std::cout << "device (--device " << *device << "): " << d.device << (d.device == "cpu" ? " (fused QINS kernels)" : " (generic device path)") << "\n";
      if (!d.note.empty()) std::cout << "device note: " << d.note << "\n";
    }
    return r.ok ? 0 : 1;
  };
}

Runner add_fixture(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto o = std::make_shared<FixtureOptions>();
  app.add_option("dir", *dir, "Output folder")->required();
  app.add_option("--hidden", o->hidden_size)->capture_default_str();
  app.add_option("--intermediate", o->intermediate_size)->capture_default_str();
  app.add_option("--layers", o->num_layers)->capture_default_str();
  app.add_option("--heads", o->num_heads)->capture_default_str();
  app.add_option("--kv-heads", o->num_kv_heads)->capture_default_str();
  app.add_flag("--longrope", o->longrope, "Add LongRoPE scaling (original context 4096)");
  app.add_flag("--tied", o->tie_embeddings, "Tie lm_head to the embedding");
  app.add_flag("--bf16", o->bf16, "Store BF16 weights");
  app.add_flag("--sharded", o->sharded, "Write two shards and an index");
  app.add_option("--seed", o->seed)->capture_default_str();
  return [=]() {
    if (o->longrope) o->max_position = 4 * o->original_max_position;
    write_fixture_model(*dir, *o);
    std::printf("wrote a %d-layer random Phi-3 fixture to %s\n", o->num_layers, dir->c_str());
    return 0;
  };
}

}  // namespace qins::cli
