//===- recipe_fuzzer.cpp - recipes and their dotted overrides -------------===//
//
// The input is a recipe's YAML; after a NUL byte, if there is one, come
// overrides, one "train.lr=3e-4" a line, as the command line gives them.
// Recipe::load either refuses them with one error naming the field or
// returns a recipe whose sizes are within the documented bounds.
//
//===----------------------------------------------------------------------===//

#include "compiler/Recipe.h"
#include "test/fuzz/FuzzUtil.h"

#include <cstring>
#include <string>
#include <utility>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const std::string path = veomni::fuzz::ScratchPath("recipe.yaml");
  const uint8_t *nul = static_cast<const uint8_t *>(std::memchr(data, 0, size));
  size_t yaml = nul ? static_cast<size_t>(nul - data) : size;
  veomni::fuzz::WriteFile(path, data, yaml);
  std::vector<std::pair<std::string, std::string>> overrides;
  if (nul) {
    std::string rest(reinterpret_cast<const char *>(nul + 1), size - yaml - 1);
    size_t at = 0;
    while (at < rest.size()) {
      size_t end = rest.find('\n', at);
      if (end == std::string::npos)
        end = rest.size();
      std::string line = rest.substr(at, end - at);
      size_t eq = line.find('=');
      if (eq != std::string::npos)
        overrides.push_back({line.substr(0, eq), line.substr(eq + 1)});
      at = end + 1;
    }
  }
  (void)mlir::veomni::Recipe::load(path, overrides);
  return 0;
}
