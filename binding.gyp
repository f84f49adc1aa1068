{
  "targets": [
    {
      "target_name": "vhost_scsi_native",
      "sources": [
        "backend/native/addon.cc",
        "backend/native/common.cc",
        "backend/native/eventfd.cc",
        "backend/native/io.cc",
        "backend/native/iov.cc",
        "backend/native/memory.cc",
        "backend/native/poller.cc",
        "backend/native/sockets.cc",
        "backend/native/uring.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lpthread", "-ldl"]
    },
    {
      "target_name": "vhost_loadgen",
      "type": "executable",
      "sources": [
        "bench/loadgen/blk.cc",
        "bench/loadgen/common.cc",
        "bench/loadgen/guest_memory.cc",
        "bench/loadgen/histogram.cc",
        "bench/loadgen/io_queue.cc",
        "bench/loadgen/main.cc",
        "bench/loadgen/options.cc",
        "bench/loadgen/ring.cc",
        "bench/loadgen/scsi.cc",
        "bench/loadgen/vhost_user.cc"
      ],
      "defines": ["_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "libraries": ["-lpthread"]
    }
  ]
}
