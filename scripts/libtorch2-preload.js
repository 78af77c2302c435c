// Preloaded (NODE_OPTIONS=--require) by scripts/check-libtorch2.sh into every node process of a
// test run under Debian trixie's dynamic loader.
//
// That node runs as `ld-linux-x86-64.so.2 --library-path ... node`, so its process.execPath is
// the loader itself, and the test runner (node --test), which starts one child per test file with
// process.execPath, and tests that spawn node would run children without the trixie libraries.
// Point execPath at the wrapper script that starts node through the loader again instead.
// (Setting LD_LIBRARY_PATH would leak trixie's libc into the system binaries the tests spawn,
// e.g. tar, started by the system's older loader.)
'use strict';
if (process.env.SEMAIM_NODE_WRAPPER) process.execPath = process.env.SEMAIM_NODE_WRAPPER;
