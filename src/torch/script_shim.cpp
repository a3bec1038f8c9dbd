// What tch's TorchScript API does not expose, for `models::torchscript`: a module's buffers
// (BatchNorm statistics) as tensors sharing the module's storage, so training, checkpoints and
// saved weights hold them as they hold parameters, and the type of every submodule, so analyses
// classify parameters by the layer that holds them rather than by name.
//
// Each function takes the `torch::jit::Module*` a tch `CModule` wraps and reports through a
// callback; it returns NULL, or an error message the caller frees with `free`.
#include <torch/csrc/jit/api/module.h>

#include <cstdlib>
#include <cstring>
#include <exception>

extern "C" {

// `f(data, name, tensor)` for every buffer, recursively, with its dotted name; `tensor` is a new
// handle (tch's `C_tensor`) that the callee owns.
char *robarch_named_buffers(torch::jit::Module *m, void *data,
                            void (*f)(void *, const char *, at::Tensor *)) {
  try {
    for (const auto &b : m->named_buffers(/*recurse=*/true)) {
      f(data, b.name.c_str(), new at::Tensor(b.value));
    }
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}

// `f(data, name, type)` for the module and every submodule: its dotted name ("" for the module
// itself) and the qualified name of its class (e.g. `__torch__.torch.nn.modules.conv.Conv2d`).
char *robarch_module_types(torch::jit::Module *m, void *data,
                           void (*f)(void *, const char *, const char *)) {
  try {
    for (const auto &s : m->named_modules()) {
      auto name = s.value.type()->name();
      std::string type = name ? name->qualifiedName() : std::string();
      f(data, s.name.c_str(), type.c_str());
    }
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}
}
