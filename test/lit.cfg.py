# -*- Python -*-
import os
import sys

import lit.formats
from lit.llvm import llvm_config

config.name = "VEOMNI"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit", "Inputs",
                   "fuzz"]  # fuzz corpora: inputs, not tests (ctest Fuzz.*)
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.veomni_obj_root, "test")

config.environment["FILECHECK_OPTS"] = "-enable-var-scope --allow-unused-prefixes=false"
llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.add_tool_substitutions(["veomni-opt", "veomni-run", "veomni"], [config.veomni_tools_dir])
config.substitutions.append(("%python", sys.executable))
config.substitutions.append(("%veomni_tools_dir", config.veomni_tools_dir))
if config.veomni_cuda:
    config.available_features.add("cuda")
    # A GPU this process can use: the CUDA tests that run kernels need one
    # and are reported as unsupported (skipped) without it.
    if any(os.path.exists("/dev/nvidia%d" % i) for i in range(16)):
        config.available_features.add("cuda-device")
