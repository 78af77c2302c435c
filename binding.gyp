{
  "targets": [
    {
      "target_name": "semaim",
      "sources": ["native/addon.cc", "native/core.cc", "native/math.cc", "native/nn.cc", "native/optim.cc", "native/cuda.cc", "native/allocator.cc", "native/dist.cc", "native/fused.cc", "native/profiler.cc", "native/signals.cc"],
      # The op glue (native/generated/) and the TypeScript interface come from native/ops.yaml through
      # native/gen-ops.js, which native/install.js and `npm run build:native` run before node-gyp.
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include_dir\")", "<!@(node native/find-libtorch.js include)"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17", "-std=gnu++20"],
      # -Werror=unused-function / missing-declarations: an op function that native/ops.yaml does not
      # declare (a static impl:: function nothing calls, or a non-static one) fails the build.
      "cflags_cc": ["-O2", "-fexceptions", "-frtti", "-Wno-unused-parameter", "-Wno-deprecated-declarations",
                    "-Werror=unused-function", "-Werror=missing-declarations", "<!@(node native/find-libtorch.js cflags)"],
      "ldflags": ["<!@(node native/find-libtorch.js ldflags)"]
    }
  ]
}
