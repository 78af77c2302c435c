// A genuine second SIGINT/SIGTERM exits at once, even while the main thread is blocked in a libtorch
// step. Node runs JS signal listeners only when the event loop turns, so two signals seconds apart
// reach JS back to back after the step and look like one signal delivered twice (src/run/signals.ts
// ignores a repeat within SAME_SIGNAL_MS). Only a C handler sees when a signal really arrived.
#include "common.h"

#ifndef _WIN32
#include <errno.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#endif

namespace semaim {

namespace impl {

#ifndef _WIN32

static constexpr int kStopSignals[2] = {SIGINT, SIGTERM};
// The actions before ours (libuv's, installed when JS listened to the signal), chained to and restored.
static struct sigaction g_previous[2];
// How many catchers have armed (src/run/signals.ts nests them: a loop inside a job); touched from JS only.
static int g_arms = 0;
// Read in the handler: the first stop signal (0 before), its arrival (0 until recorded) and the window.
static std::atomic<int> g_first_signal{0};
static std::atomic<int64_t> g_first_ns{0};
static std::atomic<int64_t> g_same_ns{0};
// Whether the message starts on a new line: when a progress line may be on screen (afterProgress).
static std::atomic<bool> g_line_break{false};

static int64_t monotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

static void writeAll(const char* s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(2, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

static void chain(int index, int signo, siginfo_t* info, void* context) {
  const struct sigaction& prev = g_previous[index];
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) prev.sa_sigaction(signo, info, context);
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN && prev.sa_handler) {
    prev.sa_handler(signo);
  }
}

// Async-signal-safe only: clock_gettime, atomics, write, _exit.
static void onStopSignal(int signo, siginfo_t* info, void* context) {
  int saved_errno = errno;
  int64_t now = monotonicNs();
  int first = 0;
  if (g_first_signal.compare_exchange_strong(first, signo)) {
    g_first_ns.store(now);
  } else {
    int64_t at = g_first_ns.load();
    // at == 0: the first is still being recorded on another thread, so this one came with it.
    if (first != signo || (at != 0 && now - at >= g_same_ns.load())) {
      if (g_line_break.load()) writeAll("\n");
      writeAll(signo == SIGTERM ? "SIGTERM again: exiting now, without a checkpoint of this step\n"
                                : "SIGINT again: exiting now, without a checkpoint of this step\n");
      _exit(128 + signo);
    }
  }
  errno = saved_errno;
  chain(signo == SIGTERM ? 1 : 0, signo, info, context);
}

static bool ours(const struct sigaction& a) { return (a.sa_flags & SA_SIGINFO) && a.sa_sigaction == &onStopSignal; }

static void armStopSignalExit(int64_t sameSignalMs) {
  g_same_ns.store(sameSignalMs * 1000000);
  const char* term = getenv("TERM");
  g_line_break.store(isatty(2) && !(term && strcmp(term, "dumb") == 0));
  if (g_arms++ > 0) return;
  g_first_signal.store(0);
  g_first_ns.store(0);
  for (int i = 0; i < 2; ++i) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = &onStopSignal;
    sigemptyset(&action.sa_mask);
    sigaddset(&action.sa_mask, SIGINT);
    sigaddset(&action.sa_mask, SIGTERM);
    action.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    // The previous action is saved before ours is installed: ours may run as soon as it is.
    struct sigaction previous;
    if (sigaction(kStopSignals[i], nullptr, &previous) != 0 || ours(previous)) continue;
    g_previous[i] = previous;
    sigaction(kStopSignals[i], &action, nullptr);
  }
}

static void disarmStopSignalExit() {
  if (g_arms == 0 || --g_arms > 0) return;
  for (int i = 0; i < 2; ++i) {
    struct sigaction current;
    // libuv may have replaced ours since (a new signal watcher); then its handler stays.
    if (sigaction(kStopSignals[i], nullptr, &current) == 0 && ours(current)) sigaction(kStopSignals[i], &g_previous[i], nullptr);
  }
  g_first_signal.store(0);
  g_first_ns.store(0);
}

#else

static void armStopSignalExit(int64_t sameSignalMs) {}
static void disarmStopSignalExit() {}

#endif

}  // namespace impl

}  // namespace semaim

#include "generated/signals.inc"
