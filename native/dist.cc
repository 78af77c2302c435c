// Process groups on libtorch's own distributed engine (c10d): a TCPStore rendezvous (rank 0 hosts it,
// or torchrun's agent does), Gloo for CPU tensors, NCCL for CUDA ones, collectives whose completion can
// be awaited off the main thread, and c10d's gradient Reducer (the engine behind PyTorch's
// DistributedDataParallel: bucketed all-reduce started from gradient hooks while backward runs).
//
// Compiled in every build; the c10d parts only when native/find-libtorch.js found c10d
// (SEMAIM_C10D), Gloo (USE_C10D_GLOO), NCCL (USE_C10D_NCCL, CUDA builds) and the Reducer
// (SEMAIM_C10D_REDUCER). distInfo() tells JS which of them this build has.
//
// Lifetimes: a ProcessGroup object owns its store and c10d process group until shutdown() (or until
// it is garbage collected); a collective returns a work id owned by the group until wait()/waitAsync()
// consumes it. A GradReducer keeps its group alive until dispose(). No C++ exception crosses into
// N-API: every libtorch/Gloo error becomes a JS Error with .code (ERR_DIST, ERR_DIST_TIMEOUT,
// ERR_DIST_PEER), .op, .rank and .worldSize.
#include "common.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <limits>
#include <memory>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#ifdef SEMAIM_C10D
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <gloo/config.h>  // GLOO_USE_TORCH_DTYPES (glooSumsHalf); find-libtorch.js enables Gloo only where it found it
#endif
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#ifdef SEMAIM_C10D_REDUCER
#include <torch/csrc/distributed/c10d/reducer.hpp>
#endif
#endif

namespace semaim {

namespace impl {

#ifdef USE_C10D_GLOO
// Whether this libtorch's Gloo sums (and broadcasts) tensors of the half type t. Gloo's dtype switch
// (GENERATE_ALL_TYPES) has float16 in every version and bfloat16 from 2.2 (pytorch/pytorch#113557), except
// in a libtorch built on a Gloo without torch's dtypes (GLOO_USE_TORCH_DTYPES 0 in gloo/config.h, as Debian
// builds it): since the switch moved into c10d/gloo/ProcessGroupGlooDetail.hpp, such a build has neither
// half type (Debian's 2.14); PyTorch's own builds set it to 1. The switch itself cannot be asked: that header
// defines a static function it does not use, which -Werror=unused-function refuses.
static bool glooSumsHalf(at::ScalarType t) {
#if __has_include(<torch/csrc/distributed/c10d/gloo/ProcessGroupGlooDetail.hpp>) && defined(GLOO_USE_TORCH_DTYPES)
  if (!GLOO_USE_TORCH_DTYPES) return false;
#endif
  return t != at::kBFloat16 || SEMAIM_TORCH_AT_LEAST(2, 2);
}
#endif

// Which of libtorch's distributed pieces this build has (the defines come from native/find-libtorch.js),
// and which half types the Gloo backend sums (gradient compression).
static DistInfoResult distInfo() {
  bool c10d = false, gloo = false, nccl = false, reducer = false, glooFloat16 = false, glooBFloat16 = false;
#ifdef SEMAIM_C10D
  c10d = true;
#endif
#ifdef USE_C10D_GLOO
  gloo = true;
  glooFloat16 = glooSumsHalf(at::kHalf);
  glooBFloat16 = glooSumsHalf(at::kBFloat16);
#endif
#ifdef USE_C10D_NCCL
  nccl = true;
#endif
#ifdef SEMAIM_C10D_REDUCER
  reducer = true;
#endif
  return {c10d, gloo, nccl, reducer, glooFloat16, glooBFloat16};
}

}  // namespace impl

#ifdef SEMAIM_C10D

namespace {

using Millis = std::chrono::milliseconds;

// ---------------------------------------------------------------- errors

// What went wrong in a collective, classified so that JS can tell a dead peer from a timeout.
struct Failure {
  std::string code = "ERR_DIST";
  std::string message;
  bool storeAnswered = false;  // the store refused this rank: asking whether rank 0 runs would mislead
};

bool contains(const std::string& s, const char* needle) { return s.find(needle) != std::string::npos; }

// Another rank posted that it could not start (its own error, e.g. a bad option or path on its machine).
struct RankCouldNotStart : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The rendezvous turned this rank away (another world size, or its rank taken by another process).
struct RendezvousRefused : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Call inside a catch block: the in-flight exception as a Failure (never rethrows).
Failure currentFailure() {
  Failure f;
  try {
    throw;
  } catch (const RankCouldNotStart& e) {
    f.code = "ERR_DIST_START";
    f.message = e.what();
    return f;
  } catch (const RendezvousRefused& e) {
    f.message = e.what();
    f.storeAnswered = true;
    return f;
  } catch (const c10::Error& e) {
    f.message = e.what_without_backtrace();
  } catch (const std::exception& e) {
    f.message = e.what();
  } catch (...) {
    f.message = "unknown native exception";
  }
  auto cut = f.message.find("\nException raised from");
  if (cut != std::string::npos) f.message = f.message.substr(0, cut);
  while (!f.message.empty() && (f.message.back() == '\n' || f.message.back() == ' ')) f.message.pop_back();
  const std::string& m = f.message;
  if (contains(m, "imed out") || contains(m, "timeout") || contains(m, "Timeout")) {
    f.code = "ERR_DIST_TIMEOUT";
  } else if (contains(m, "closed by peer") || contains(m, "reset by peer") || contains(m, "Broken pipe") ||
             contains(m, "Connection refused") || contains(m, "Connection closed") || contains(m, "EOF")) {
    f.code = "ERR_DIST_PEER";
  }
  return f;
}

// Where a failure happened, for the message.
struct Where {
  std::string op;
  int rank = -1;
  int size = 0;
  std::string backend;
  int64_t timeoutMs = 0;
};

Napi::Error distError(Napi::Env env, const Failure& f, const Where& w) {
  std::string msg = "dist." + w.op + " failed on rank " + std::to_string(w.rank) + " of " + std::to_string(w.size) +
                    (w.backend.empty() ? "" : " (" + w.backend + ")") + ": " + f.message;
  if (f.code == "ERR_DIST_PEER") {
    msg += " [another rank exited, was killed or closed the process group: see that rank's output]";
  } else if (f.code == "ERR_DIST_TIMEOUT") {
    msg += " [not every rank joined within " + std::to_string(w.timeoutMs) +
           " ms: a rank is stuck, much slower, dead, or calls collectives in a different order]";
  }
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, f.code));
  err.Set("op", Napi::String::New(env, w.op));
  err.Set("rank", Napi::Number::New(env, w.rank));
  err.Set("worldSize", Napi::Number::New(env, w.size));
  return err;
}

// ---------------------------------------------------------------- libtorch 1.x / 2.x

// libtorch 1.x: a backend (ProcessGroupGloo, ProcessGroupNCCL) is the process group. 2.x: backends
// derive from c10d::Backend and a c10d::ProcessGroup routes each device type to one of them.
#if SEMAIM_TORCH_AT_LEAST(2, 0) && (defined(USE_C10D_GLOO) || defined(USE_C10D_NCCL))
c10::intrusive_ptr<c10d::ProcessGroup> groupOf(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                               const c10::intrusive_ptr<c10d::Backend>& backend,
                                               c10d::ProcessGroup::BackendType type, std::vector<c10::DeviceType> devices,
                                               Millis timeout) {
#if SEMAIM_TORCH_AT_LEAST(2, 6)
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
#else
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(
      store, rank, size, c10::make_intrusive<c10d::ProcessGroup::Options>(backend->getBackendName(), timeout));
#endif
  for (auto d : devices) pg->setBackend(d, type, backend);
  pg->setDefaultBackend(type);
  return pg;
}
#endif

// ---------------------------------------------------------------- init

struct InitOptions {
  std::string backend;  // "gloo" | "nccl"
  int rank = 0;
  int size = 1;
  std::string masterAddr;
  int masterPort = 0;
  int64_t timeoutMs = 0;
  bool storeHost = false;       // this process runs the TCPStore server
  std::string storePrefix;      // keys under this prefix (torchrun's agent store); empty = none
  std::string glooInterface;    // network interface for Gloo (GLOO_SOCKET_IFNAME); empty = by host
  std::string glooHost;         // address Gloo binds to; empty = this machine's hostname (c10d's default)
  int glooThreads = 2;
  int device = 0;               // CUDA device index (NCCL)
  std::string failure;          // non-empty: this rank cannot start; post why at the store, make no backend
};

std::string strOpt(const Napi::Object& o, const char* k, const std::string& dflt = "") {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsString()) throw std::invalid_argument(std::string("option '") + k + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}
// A safe integer (casting a larger double to int64 is undefined behaviour).
int64_t intOpt(const Napi::Object& o, const char* k, int64_t dflt) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!std::isfinite(d) || d != std::trunc(d) || std::fabs(d) > 9007199254740991.0)
    throw std::invalid_argument(std::string("option '") + k + "' must be an integer");
  return static_cast<int64_t>(d);
}
// An option InitOptions keeps as an int: refused outside [lo, hi] before the narrowing (worldSize 2^32 + 1
// was read as 1, a world of one rank).
int intOptIn(const Napi::Object& o, const char* k, int64_t dflt, int64_t lo, int64_t hi) {
  const int64_t v = intOpt(o, k, dflt);
  if (v < lo || v > hi) throw std::invalid_argument(std::string("option '") + k + "' must be in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " + std::to_string(v));
  return static_cast<int>(v);
}

InitOptions readInitOptions(const Napi::Value& v) {
  if (!v.IsObject()) throw std::invalid_argument("expected an options object");
  Napi::Object o = v.As<Napi::Object>();
  InitOptions r;
  r.backend = strOpt(o, "backend", "gloo");
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  r.size = intOptIn(o, "worldSize", 1, 1, kIntMax);
  const int64_t rank = intOpt(o, "rank", 0);
  if (rank < 0 || rank >= r.size)
    throw std::invalid_argument("rank " + std::to_string(rank) + " is not in [0, worldSize = " + std::to_string(r.size) + ")");
  r.rank = static_cast<int>(rank);
  r.masterAddr = strOpt(o, "masterAddr", "127.0.0.1");
  r.masterPort = intOptIn(o, "masterPort", 29500, 1, 65535);
  r.timeoutMs = intOpt(o, "timeoutMs", 30 * 60 * 1000);
  r.storeHost = o.Get("storeHost").ToBoolean().Value();
  r.storePrefix = strOpt(o, "storePrefix");
  r.glooInterface = strOpt(o, "glooInterface");
  r.glooHost = strOpt(o, "glooHost");
  r.glooThreads = intOptIn(o, "glooThreads", 2, 1, kIntMax);
  r.device = intOptIn(o, "device", 0, 0, std::numeric_limits<c10::DeviceIndex>::max());  // c10::cuda::set_device's type
  r.failure = strOpt(o, "failure");
  if (r.timeoutMs < 1) throw std::invalid_argument("timeoutMs must be positive");
#ifndef USE_C10D_GLOO
  if (r.backend == "gloo") throw std::invalid_argument("this build has no Gloo backend (libtorch without ProcessGroupGloo, or gloo's headers were missing at build time: install libgloo-dev and rebuild)");
#endif
#ifndef USE_C10D_NCCL
  if (r.backend == "nccl") throw std::invalid_argument("this build has no NCCL backend (needs a CUDA libtorch with ProcessGroupNCCL and nccl.h at build time)");
#endif
  if (r.backend != "gloo" && r.backend != "nccl") throw std::invalid_argument("unknown backend '" + r.backend + "' (gloo or nccl)");
  return r;
}

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
};

// libtorch >= 2.4 asks for the libuv TCPStore by default, which builds without libuv (Debian's 2.6)
// refuse: fall back to the classic one there.
c10::intrusive_ptr<c10d::Store> tcpStore(const std::string& host, c10d::TCPStoreOptions so) {
#if SEMAIM_TORCH_AT_LEAST(2, 2)
  try {
    return c10::make_intrusive<c10d::TCPStore>(host, so);
  } catch (const c10::Error& e) {
    if (!so.useLibUV || !contains(e.what(), "libuv")) throw;
    so.useLibUV = false;
  }
#endif
  return c10::make_intrusive<c10d::TCPStore>(host, so);
}

// ---------------------------------------------------------------- meeting at the store
// Before the backend connects, each rank posts at the store that it joined, or why it cannot start (a bad
// option or path on its machine): the others then stop at once naming that rank and its reason, instead
// of waiting in the backend's connection for the whole timeout (30 minutes by default).

std::string joinedKey(int r) { return "semaim/joined/" + std::to_string(r); }
std::string failedKey(int r) { return "semaim/failed/" + std::to_string(r); }
std::string readKey(int r) { return "semaim/read-failure/" + std::to_string(r); }
// How many processes have come as rank r: more than one means another run shares this store (the same
// MASTER_ADDR:MASTER_PORT) or two workers were given the same RANK.
std::string claimsKey(int r) { return "semaim/claims/" + std::to_string(r); }
// How many ranks have posted that they joined or why they could not (one counter for every rank to poll).
const std::string kArrivals = "semaim/arrivals";
// Two ranks with other world sizes, "<rank> <size> <rank> <size>", posted by the rank that found them: a rank whose
// WORLD_SIZE is below the other's ranks cannot see them, and waited for its own missing ranks until the timeout.
const std::string kWorldSizeConflict = "semaim/world-size-conflict";

bool has(c10d::Store& store, const std::string& key) { return store.check(std::vector<std::string>{key}); }
std::vector<uint8_t> bytesOf(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::string ranksText(const std::vector<int>& ranks) {
  std::string t;
  for (int r : ranks) t += (t.empty() ? "" : ", ") + std::to_string(r);
  return t;
}
constexpr Millis kPoll{20};

// The store host keeps the store (it lives in its process) until every other rank has read a start
// failure or failed itself, or the timeout: leaving at once would leave them a refused connection.
void keepStoreUntilRead(c10d::Store& store, const InitOptions& o) {
  if (!o.storeHost) return;
  auto deadline = std::chrono::steady_clock::now() + Millis(o.timeoutMs);
  for (int r = 0; r < o.size; r++) {
    while (r != o.rank && !has(store, readKey(r)) && !has(store, failedKey(r)) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(kPoll);
  }
}

// Posts this rank's failure to start.
void postFailure(c10d::Store& store, const InitOptions& o) {
  store.set(failedKey(o.rank), bytesOf(o.failure));
  store.add(kArrivals, 1);
  keepStoreUntilRead(store, o);
}

std::string worldSizeDisagreement(const InitOptions& o, int rank, const std::string& theirs) {
  return "the ranks disagree on the world size: this one has WORLD_SIZE=" + std::to_string(o.size) + ", rank " + std::to_string(rank) +
         " has WORLD_SIZE=" + theirs + "; start every worker with the same WORLD_SIZE";
}

// Waits until every rank has joined; throws RankCouldNotStart when one posted a failure, a timeout
// naming the ranks that never came, and names a rank that was started with another world size.
void meetEveryRank(c10d::Store& store, const InitOptions& o) {
  // Checked before joining: this process would otherwise connect to the other one's peers, where Gloo
  // waits for it without a timeout, and would disturb the run it does not belong to.
  if (store.add(claimsKey(o.rank), 1) > 1)
    throw RendezvousRefused("another process has already come to the rendezvous at " + o.masterAddr + ":" + std::to_string(o.masterPort) +
                                " as rank " + std::to_string(o.rank) + " of " + std::to_string(o.size) +
                                ": another run uses this MASTER_PORT (give each run its own --master-port), or two workers were started with RANK=" +
                                std::to_string(o.rank));
  store.set(joinedKey(o.rank), bytesOf(std::to_string(o.size)));
  store.add(kArrivals, 1);
  auto deadline = std::chrono::steady_clock::now() + Millis(o.timeoutMs);
  std::vector<bool> joined(o.size, false);
  joined[o.rank] = true;
  std::vector<int> missing;
  for (int64_t seen = 0;;) {
    // one request per poll: the ranks' keys are read only when another rank has arrived (joined or
    // failed), so a world of N ranks waiting for a late one does not send N² requests a poll to rank 0
    int64_t arrived = store.add(kArrivals, 0);
    if (arrived != seen) {
      seen = arrived;
      missing.clear();
      if (has(store, kWorldSizeConflict)) {
        std::vector<uint8_t> posted = store.get(kWorldSizeConflict);
        std::istringstream in(std::string(posted.begin(), posted.end()));
        int rankA = 0, sizeA = 0, rankB = 0, sizeB = 0;
        in >> rankA >> sizeA >> rankB >> sizeB;
        const bool aDiffers = sizeA != o.size;
        throw RendezvousRefused(worldSizeDisagreement(o, aDiffers ? rankA : rankB, std::to_string(aDiffers ? sizeA : sizeB)));
      }
      for (int r = 0; r < o.size; r++) {
        if (joined[r]) continue;
        if (has(store, failedKey(r))) {  // checked before 'joined': a rank posts one of the two
          std::vector<uint8_t> why = store.get(failedKey(r));
          store.set(readKey(o.rank), bytesOf("1"));
          keepStoreUntilRead(store, o);
          throw RankCouldNotStart("rank " + std::to_string(r) + " of " + std::to_string(o.size) + " could not start: " + std::string(why.begin(), why.end()));
        }
        if (has(store, joinedKey(r))) {
          std::vector<uint8_t> size = store.get(joinedKey(r));
          std::string theirs(size.begin(), size.end());
          if (theirs != std::to_string(o.size)) {
            store.set(kWorldSizeConflict, bytesOf(std::to_string(o.rank) + " " + std::to_string(o.size) + " " + std::to_string(r) + " " + theirs));
            store.add(kArrivals, 1);  // (the others read it when the count moves)
            throw RendezvousRefused(worldSizeDisagreement(o, r, theirs));
          }
          joined[r] = true;
        } else {
          missing.push_back(r);
        }
      }
    }
    if (missing.empty()) return;
    if (std::chrono::steady_clock::now() >= deadline)
      throw std::runtime_error("Timeout: rank" + std::string(missing.size() > 1 ? "s " : " ") + ranksText(missing) + " of " + std::to_string(o.size) +
                               " never came to the rendezvous");
    std::this_thread::sleep_for(kPoll);
  }
}

// ---------------------------------------------------------------- failing later in the run
// A rank that fails after the start (a full disk at a checkpoint, an exception mid-training) posts its
// error at the store before it closes its backend; the others, whose next collective then fails with
// "Connection closed by peer", read it there and name it. Every rank posts that it has left; the store
// host keeps the store up after a failure until every other rank has left or read it, or a bounded wait.

std::string failedLateKey(int r) { return "semaim/failed-late/" + std::to_string(r); }
std::string leftKey(int r) { return "semaim/left/" + std::to_string(r); }
// Rank r's LateFailureWatch has read a failure (and keeps it: the store may go now).
std::string readLateKey(int r) { return "semaim/read-late/" + std::to_string(r); }
// How many ranks have posted a late failure (one counter for the watches to poll).
const std::string kLateFailures = "semaim/failed-late-count";

// The first error another rank posted: {"rank": r, "error": <what it posted>} as JSON, or "" when none.
std::string readLateFailure(c10d::Store& store, int rank, int size) {
  for (int r = 0; r < size; r++) {
    if (r == rank || !has(store, failedLateKey(r))) continue;
    std::vector<uint8_t> why = store.get(failedLateKey(r));
    return "{\"rank\":" + std::to_string(r) + ",\"error\":" + std::string(why.begin(), why.end()) + "}";
  }
  return "";
}

// Until every other rank has posted that it left or that it read the failure, or the deadline.
void waitUntilOthersLeft(c10d::Store& store, int rank, int size, Millis wait) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (int r = 0; r < size; r++) {
    while (r != rank && !has(store, leftKey(r)) && !has(store, readLateKey(r)) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(kPoll);
  }
}

// A rank can be blocked in a collective that a failing rank never starts (a gradient bucket of a backward
// that threw there). The failing rank's backend then cannot be closed safely (it is abandoned: its
// connections close only with its process), so the blocked ranks learn of the failure only when that
// process ends. When it is rank 0, whose process serves the store, it keeps the store up for them first
// (waitUntilOthersLeft), and they, blocked, would never say they left: the wait ran to its end (30 s)
// and the store was gone when they looked for the reason. So every rank but the store's host watches the
// store on a thread of its own (one request per poll): it keeps the first failure another rank posts and
// says it has read it; rank 0 then stops waiting, and its exit fails the blocked collectives at once.
class LateFailureWatch {
 public:
  static std::shared_ptr<LateFailureWatch> start(c10::intrusive_ptr<c10d::Store> store, int rank, int size) {
    auto watch = std::make_shared<LateFailureWatch>();
    // detached, never joined: a request to a store whose machine vanished may block for the store's timeout
    std::thread([watch, store, rank, size] { watch->run(*store, rank, size); }).detach();
    return watch;
  }

  // The failure it read (JSON, as readLateFailure gives it), or "".
  std::string heard() {
    std::lock_guard<std::mutex> lock(m_);
    return heard_;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stopped_ = true;
    }
    wake_.notify_all();
  }

 private:
  static constexpr Millis kWatchPoll{200};

  void run(c10d::Store& store, int rank, int size) {
    try {
      for (;;) {
        {
          std::unique_lock<std::mutex> lock(m_);
          if (wake_.wait_for(lock, kWatchPoll, [this] { return stopped_; })) return;
        }
        if (store.add(kLateFailures, 0) == 0) continue;
        std::string why = readLateFailure(store, rank, size);
        if (why.empty()) continue;  // only this rank's own
        {
          std::lock_guard<std::mutex> lock(m_);
          heard_ = why;
        }
        store.set(readLateKey(rank), bytesOf("1"));
        return;
      }
    } catch (...) {
      // the store is gone (its process ended or was killed): there is nothing more to hear
    }
  }

  std::mutex m_;
  std::condition_variable wake_;
  bool stopped_ = false;
  std::string heard_;
};

// Runs off the main thread: the rendezvous blocks until every rank has joined (or the timeout).
Group createGroup(const InitOptions& o) {
  Millis timeout(o.timeoutMs);
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(o.masterPort);
  so.isServer = o.storeHost;
  so.numWorkers = o.storePrefix.empty() ? c10::optional<std::size_t>(static_cast<std::size_t>(o.size)) : c10::nullopt;
  // not waiting for every worker at the store: Gloo's full-mesh connection waits for them anyway, with the
  // whole timeout; waiting here first made a rank that never came fail only after two timeouts
  so.waitWorkers = false;
  so.timeout = timeout;
  so.multiTenant = true;
  Group g;
  c10::intrusive_ptr<c10d::Store> tcp = tcpStore(o.masterAddr, so);
  if (o.storePrefix.empty()) {
    g.store = tcp;
  } else {
    g.store = c10::make_intrusive<c10d::PrefixStore>(o.storePrefix, tcp);
  }
  g.store->setTimeout(timeout);
  if (!o.failure.empty()) {
    postFailure(*g.store, o);
    return Group{};
  }
  meetEveryRank(*g.store, o);
#ifdef USE_C10D_GLOO
  if (o.backend == "gloo") {
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    if (!o.glooInterface.empty()) {
      // GLOO_SOCKET_IFNAME may list several interfaces, comma-separated: a device on each, as torch.distributed
      // does (one name with a comma in it was refused: "Unable to find address for: eth0,eth1")
      size_t from = 0;
      while (from <= o.glooInterface.size()) {
        size_t comma = o.glooInterface.find(',', from);
        if (comma == std::string::npos) comma = o.glooInterface.size();
        std::string name = o.glooInterface.substr(from, comma - from);
        if (!name.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
        from = comma + 1;
      }
    }
    if (opts->devices.empty()) {
      opts->devices.push_back(!o.glooHost.empty() ? c10d::ProcessGroupGloo::createDeviceForHostname(o.glooHost)
                                                  : c10d::ProcessGroupGloo::createDefaultDevice());
    }
    opts->threads = o.glooThreads;
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(g.store, o.rank, o.size, opts);
#if SEMAIM_TORCH_AT_LEAST(2, 0)
    g.pg = groupOf(g.store, o.rank, o.size, gloo, c10d::ProcessGroup::BackendType::GLOO, {c10::DeviceType::CPU, c10::DeviceType::CUDA}, timeout);
#else
    g.pg = gloo;
#endif
  }
#endif
#ifdef USE_C10D_NCCL
  if (o.backend == "nccl") {
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(g.store, o.rank, o.size, opts);
#if SEMAIM_TORCH_AT_LEAST(2, 0)
    g.pg = groupOf(g.store, o.rank, o.size, nccl, c10d::ProcessGroup::BackendType::NCCL, {c10::DeviceType::CUDA}, timeout);
#else
    g.pg = nccl;
#endif
  }
#endif
  if (!g.pg) throw std::invalid_argument("backend '" + o.backend + "' is not built in");
  return g;
}

// ---------------------------------------------------------------- process group

const napi_type_tag kGroupTag = {0x5e3a1a0d15c0ffeeULL, 0x9d1c10d0a11e0001ULL};

// One collective in flight: its c10d work, the tensors it uses (kept alive until it completes) and,
// for allGather, the output list.
struct Pending {
  c10::intrusive_ptr<c10d::Work> work;
  Millis timeout{0};  // also enforced by the wait: some backends (Gloo in 1.13) use only the group's
  Where where;
  std::vector<at::Tensor> inputs;
  std::vector<at::Tensor> outputs;
};

Napi::Value outputsToJs(Napi::Env env, const Pending& p) { return wrapList(env, p.outputs); }

// Waits for one collective on a libuv pool thread, so the main thread (timers, signals, I/O) keeps
// running; resolves with the collective's output tensors (allGather) or an empty array.
class WaitWorker : public Napi::AsyncWorker {
 public:
  WaitWorker(Napi::Env env, Pending p, std::function<void()> onFailure)
      : Napi::AsyncWorker(env, "semaim.dist.wait"), deferred_(Napi::Promise::Deferred::New(env)), p_(std::move(p)), onFailure_(std::move(onFailure)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      p_.work->wait(p_.timeout);
    } catch (...) {
      failure_ = currentFailure();
      SetError(failure_.message);
    }
  }
  void OnOK() override { deferred_.Resolve(outputsToJs(Env(), p_)); }
  void OnError(const Napi::Error&) override {
    onFailure_();
    deferred_.Reject(distError(Env(), failure_, p_.where).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Pending p_;
  std::function<void()> onFailure_;  // runs on the main thread
  Failure failure_;
};

// Runs a task on a libuv pool thread (store requests, waits) and resolves with the string it returns.
class StoreTask : public Napi::AsyncWorker {
 public:
  static Napi::Promise run(Napi::Env env, std::function<std::string()> task) {
    auto* w = new StoreTask(env, std::move(task));
    Napi::Promise promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }
  void Execute() override {
    try {
      result_ = task_();
    } catch (...) {
      SetError(currentFailure().message);
    }
  }
  void OnOK() override { deferred_.Resolve(Napi::String::New(Env(), result_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  StoreTask(Napi::Env env, std::function<std::string()> task)
      : Napi::AsyncWorker(env, "semaim.dist.store"), deferred_(Napi::Promise::Deferred::New(env)), task_(std::move(task)) {}
  Napi::Promise::Deferred deferred_;
  std::function<std::string()> task_;
  std::string result_;
};

class ProcessGroupHandle : public Napi::ObjectWrap<ProcessGroupHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ProcessGroup",
                       {InstanceMethod("init", &ProcessGroupHandle::Init), InstanceMethod("allReduce", &ProcessGroupHandle::AllReduce),
                        InstanceMethod("broadcast", &ProcessGroupHandle::Broadcast),
                        InstanceMethod("allGather", &ProcessGroupHandle::AllGather),
                        InstanceMethod("gather", &ProcessGroupHandle::Gather),
                        InstanceMethod("barrier", &ProcessGroupHandle::Barrier), InstanceMethod("wait", &ProcessGroupHandle::Wait),
                        InstanceMethod("waitAsync", &ProcessGroupHandle::WaitAsync),
                        InstanceMethod("pending", &ProcessGroupHandle::PendingCount),
                        InstanceMethod("broadcastCoalesced", &ProcessGroupHandle::BroadcastCoalesced),
                        InstanceMethod("lateFailure", &ProcessGroupHandle::LateFailure),
                        InstanceMethod("leave", &ProcessGroupHandle::Leave),
                        InstanceMethod("shutdown", &ProcessGroupHandle::Shutdown)});
  }

  explicit ProcessGroupHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcessGroupHandle>(info) {
    info.This().As<Napi::Object>().TypeTag(&kGroupTag);
  }

  static ProcessGroupHandle* from(const Napi::Value& v, const char* what) {
    if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kGroupTag)) throw std::invalid_argument(std::string("expected a ProcessGroup, got something else (") + what + ")");
    return Unwrap(v.As<Napi::Object>());
  }

  const c10::intrusive_ptr<c10d::ProcessGroup>& group(const char* op) const {
    if (!pg_) throw std::invalid_argument(shutDown_ ? "the process group was shut down" : "the process group is not initialised");
    return pg_;
  }
  Where where(const std::string& op, int64_t timeoutMs = 0) const { return Where{op, rank_, size_, backend_, timeoutMs > 0 ? timeoutMs : timeoutMs_}; }

 private:
  friend class InitWorker;

  // init(options) -> Promise<void>: TCPStore rendezvous and backend creation, off the main thread.
  Napi::Value Init(const Napi::CallbackInfo& info);

  Napi::Value PendingCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(works_.size())); }

  Millis opTimeout(const Napi::CallbackInfo& info, size_t i) const {
    auto t = argOptInt(info, i);
    return t && *t > 0 ? Millis(*t) : Millis(timeoutMs_);
  }

  Napi::Value track(Napi::Env env, Pending p) {
    int64_t id = nextId_++;
    works_.emplace(id, std::move(p));
    return Napi::Number::New(env, static_cast<double>(id));
  }

  // Launches a collective; a synchronous failure (bad tensor, broken group) throws a dist error.
  template <typename F>
  Napi::Value launch(const Napi::CallbackInfo& info, const std::string& op, Millis timeout, Pending p, F start) {
    const auto& pg = group(op.c_str());
    p.where = where(op, timeout.count());
    p.timeout = timeout;
    try {
      p.work = start(pg, p);
    } catch (...) {
      throw distError(info.Env(), currentFailure(), p.where);
    }
    return track(info.Env(), std::move(p));
  }

  // allReduce(tensors, op 'sum'|'avg'|'max'|'min'|'product', timeoutMs?, coalesced?) -> work id. In place.
  // avg divides by the world size first (as DDP does: Gloo has no AVG), so it needs floating tensors.
  // coalesced: one collective over the flattened list (allreduce_coalesced), else one per tensor.
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.allReduce", {
      Pending p;
      p.inputs = argTensorList(info, 0);
      std::string op = argString(info, 1);
      Millis timeout = opTimeout(info, 2);
      bool coalesced = argBool(info, 3);
      c10d::ReduceOp reduce = op == "sum" || op == "avg" ? c10d::ReduceOp::SUM
                              : op == "max"              ? c10d::ReduceOp::MAX
                              : op == "min"              ? c10d::ReduceOp::MIN
                              : op == "product"          ? c10d::ReduceOp::PRODUCT
                                                         : throw std::invalid_argument("unknown op '" + op + "' (sum, avg, max, min, product)");
      if (p.inputs.empty()) throw std::invalid_argument("no tensors");
      if (op == "avg") {
        for (auto& t : p.inputs) {
          if (!at::isFloatingType(t.scalar_type())) throw std::invalid_argument(std::string("avg needs floating tensors, got ") + dtypeName(t.scalar_type()));
        }
        group("allReduce");
        at::NoGradGuard ng;
        for (auto& t : p.inputs) t.div_(size_);
      }
      return launch(info, coalesced ? "allReduceCoalesced" : "allReduce", timeout, std::move(p),
                    [&](const c10::intrusive_ptr<c10d::ProcessGroup>& pg, Pending& q) {
                      if (coalesced) {
                        c10d::AllreduceCoalescedOptions o;
                        o.reduceOp = reduce;
                        o.timeout = timeout;
                        return pg->allreduce_coalesced(q.inputs, o);
                      }
                      c10d::AllreduceOptions o;
                      o.reduceOp = reduce;
                      o.timeout = timeout;
                      return pg->allreduce(q.inputs, o);
                    });
    })
  }

  // broadcast(tensors, root, timeoutMs?) -> work id. In place.
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.broadcast", {
      Pending p;
      p.inputs = argTensorList(info, 0);
      int64_t root = argInt(info, 1);
      Millis timeout = opTimeout(info, 2);
      group("broadcast");
      if (root < 0 || root >= size_) throw std::invalid_argument("root " + std::to_string(root) + " is not a rank");
      if (p.inputs.empty()) throw std::invalid_argument("no tensors");
      return launch(info, "broadcast", timeout, std::move(p), [&](const c10::intrusive_ptr<c10d::ProcessGroup>& pg, Pending& q) {
        c10d::BroadcastOptions o;
        o.rootRank = root;
        o.timeout = timeout;
        return pg->broadcast(q.inputs, o);
      });
    })
  }

  // allGather(tensor, timeoutMs?) -> work id; its wait returns one tensor per rank.
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.allGather", {
      Pending p;
      p.inputs = {argTensor(info, 0)};
      Millis timeout = opTimeout(info, 1);
      group("allGather");
      for (int r = 0; r < size_; r++) p.outputs.push_back(at::empty_like(p.inputs[0], at::MemoryFormat::Contiguous));
      return launch(info, "allGather", timeout, std::move(p), [&](const c10::intrusive_ptr<c10d::ProcessGroup>& pg, Pending& q) {
        std::vector<std::vector<at::Tensor>> out{q.outputs};
        c10d::AllgatherOptions o;
        o.timeout = timeout;
        auto w = pg->allgather(out, q.inputs, o);
        q.outputs = out[0];
        return w;
      });
    })
  }

  // gather(tensor, root, timeoutMs?) -> work id; its wait returns one tensor per rank on root, none elsewhere.
  Napi::Value Gather(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.gather", {
      Pending p;
      // Gloo reads the input as one block of memory: a strided view (a [CLS] column x[:, 0]) would be
      // read as the wrong elements, so it is gathered from a contiguous copy
      p.inputs = {argTensor(info, 0).contiguous()};
      int64_t root = argInt(info, 1);
      Millis timeout = opTimeout(info, 2);
      group("gather");
      if (root < 0 || root >= size_) throw std::invalid_argument("root " + std::to_string(root) + " is not a rank");
      if (rank_ == root)
        for (int r = 0; r < size_; r++) p.outputs.push_back(at::empty_like(p.inputs[0], at::MemoryFormat::Contiguous));
      return launch(info, "gather", timeout, std::move(p), [&](const c10::intrusive_ptr<c10d::ProcessGroup>& pg, Pending& q) {
        // c10d wants no output list at all off the root
        std::vector<std::vector<at::Tensor>> out;
        if (!q.outputs.empty()) out.push_back(q.outputs);
        c10d::GatherOptions o;
        o.rootRank = root;
        o.timeout = timeout;
        auto w = pg->gather(out, q.inputs, o);
        if (!out.empty()) q.outputs = out[0];
        return w;
      });
    })
  }

  // barrier(timeoutMs?) -> work id.
  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.barrier", {
      Millis timeout = opTimeout(info, 0);
      return launch(info, "barrier", timeout, Pending{}, [&](const c10::intrusive_ptr<c10d::ProcessGroup>& pg, Pending&) {
        c10d::BarrierOptions o;
        o.timeout = timeout;
        return pg->barrier(o);
      });
    })
  }

  Pending take(int64_t id, const char* what) {
    auto it = works_.find(id);
    if (it == works_.end()) throw std::invalid_argument("no collective in flight with id " + std::to_string(id) + " (already waited for?)");
    Pending p = std::move(it->second);
    works_.erase(it);
    return p;
  }

  // wait(id) -> output tensors: blocks the calling (main) thread until the collective completes.
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.wait", {
      Pending p = take(argInt(info, 0), "dist.wait");
      try {
        p.work->wait(p.timeout);
      } catch (...) {
        broken_ = true;
        throw distError(info.Env(), currentFailure(), p.where);
      }
      return outputsToJs(info.Env(), p);
    })
  }

  // waitAsync(id) -> Promise<output tensors>: the wait runs on a libuv pool thread.
  Napi::Value WaitAsync(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.waitAsync", {
      // The worker holds a reference to this object (self) so that marking it broken stays valid.
      auto self = std::make_shared<Napi::ObjectReference>(Napi::Persistent(info.This().As<Napi::Object>()));
      auto* w = new WaitWorker(info.Env(), take(argInt(info, 0), "dist.waitAsync"), [this, self]() { broken_ = true; });
      Napi::Promise promise = w->promise();
      w->Queue();
      return promise;
    })
  }

  // broadcastCoalesced(tensors, root, bufferBytes): c10d's broadcast_coalesced (DDP's parameter and
  // buffer sync): tensors packed into flat buffers of up to bufferBytes per collective. Synchronous.
  Napi::Value BroadcastCoalesced(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.broadcastCoalesced", {
      std::vector<at::Tensor> ts = argTensorList(info, 0);
      int64_t root = argInt(info, 1);
      int64_t bytes = argInt(info, 2);
      const auto& pg = group("broadcastCoalesced");
      if (root < 0 || root >= size_) throw std::invalid_argument("root " + std::to_string(root) + " is not a rank");
      if (bytes < 1) throw std::invalid_argument("bufferBytes must be positive");
      try {
        at::NoGradGuard ng;
        if (!ts.empty()) c10d::broadcast_coalesced(pg, ts, static_cast<size_t>(bytes), static_cast<int>(root));
      } catch (...) {
        broken_ = true;
        throw distError(info.Env(), currentFailure(), where("broadcastCoalesced"));
      }
      return info.Env().Undefined();
    })
  }

  // lateFailure() -> Promise<string>: the error another rank posted when it failed later in the run
  // (JSON {rank, error}), or "" when none did or the store cannot be reached (its host is gone).
  Napi::Value LateFailure(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.lateFailure", {
      std::string heard = watch_ ? watch_->heard() : std::string();
      if (!heard.empty() || !store_) return StoreTask::run(info.Env(), [heard] { return heard; });
      auto store = store_;
      int rank = rank_, size = size_;
      return StoreTask::run(info.Env(), [store, rank, size] {
        try {
          return readLateFailure(*store, rank, size);
        } catch (...) {
          return std::string();
        }
      });
    })
  }

  // leave(failure, waitMs, abandon) -> Promise<void>: posts this rank's own failure (JSON, "" for none) and that it
  // has left, then closes the backend, so that the other ranks' collectives fail at once; the store host
  // then keeps the store up until every other rank has left or read it, at most waitMs. The store's errors (its host
  // gone) are ignored: the others then report the closed connection alone. A group that failed (abandon:
  // JS saw a collective fail, e.g. inside backward) is abandoned, not destroyed. Call shutdown() after it.
  Napi::Value Leave(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.leave", {
      std::string failure = argString(info, 0);
      Millis wait(std::max<int64_t>(0, argInt(info, 1)));
      auto store = store_;
      // destroying the backend closes its connections; one that may still run a collective is abandoned
      // instead (its connections close with the process)
      c10::intrusive_ptr<c10d::ProcessGroup> pg;
      if (mayStillRun(argBool(info, 2))) {
        if (pg_) pg_.release();
      } else {
        pg = std::move(pg_);
      }
      pg_.reset();
      works_.clear();
      if (watch_) watch_->stop();
      int rank = rank_, size = size_;
      bool host = storeHost_;
      return StoreTask::run(info.Env(), [store, pg = std::move(pg), failure, wait, rank, size, host]() mutable {
        try {
          if (store && !failure.empty()) {
            store->set(failedLateKey(rank), bytesOf(failure));
            store->add(kLateFailures, 1);
          }
          if (store) store->set(leftKey(rank), bytesOf("1"));
        } catch (...) {
        }
        pg.reset();
        try {
          if (store && host && wait.count() > 0) waitUntilOthersLeft(*store, rank, size, wait);
        } catch (...) {
        }
        return std::string();
      });
    })
  }

  // shutdown(abandon?): drops the group and the store (joins the backend's threads). Idempotent. A
  // GradReducer made from this group keeps it alive until disposed. A group that may still have a
  // collective running (one failed or timed out, one was never waited for, or the caller says so) is
  // abandoned instead: destroying it would block until that collective ends, which with a stuck peer is
  // the group's whole timeout. Its threads and sockets then go with the process.
  Napi::Value Shutdown(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("dist.shutdown", {
      release(argBool(info, 0));
      return info.Env().Undefined();
    })
  }

  // Whether the backend may still have a collective running (the caller says so, one failed or timed out,
  // or one was never waited for): destroying it would then block until that collective ends, which with a
  // stuck peer is the group's whole timeout, so it is abandoned instead.
  bool mayStillRun(bool abandon) const { return abandon || broken_ || !works_.empty(); }

  void release(bool abandon) {
    if (watch_) watch_->stop();
    if (mayStillRun(abandon)) {
      if (pg_) pg_.release();
      if (store_) store_.release();
    }
    works_.clear();
    pg_.reset();
    store_.reset();
    shutDown_ = true;
  }

 public:
  // Garbage collection or the environment's teardown (process exit) never waits for collectives.
  ~ProcessGroupHandle() override { release(true); }
 private:

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  int rank_ = -1;
  int size_ = 0;
  std::string backend_;
  int64_t timeoutMs_ = 0;
  bool storeHost_ = false;
  bool initialising_ = false;
  bool shutDown_ = false;
  bool broken_ = false;
  int64_t nextId_ = 1;
  std::map<int64_t, Pending> works_;
  std::shared_ptr<LateFailureWatch> watch_;  // null on the store's host and under torchrun's agent store
};

class InitWorker : public Napi::AsyncWorker {
 public:
  InitWorker(Napi::Env env, ProcessGroupHandle* target, Napi::Object self, InitOptions o)
      : Napi::AsyncWorker(env, "semaim.dist.init"), deferred_(Napi::Promise::Deferred::New(env)), target_(target),
        self_(Napi::Persistent(self)), o_(std::move(o)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      g_ = createGroup(o_);
    } catch (...) {
      failure_ = currentFailure();
      SetError(failure_.message);
    }
  }
  void OnOK() override {
    target_->initialising_ = false;
    if (target_->shutDown_) {
      // shutdown() came while the rendezvous ran: the group it dropped must not come alive now (it has
      // run no collective, so destroying it does not wait)
      g_ = Group{};
      Failure f;
      f.message = "the process group was shut down while it was initialising";
      deferred_.Reject(distError(Env(), f, Where{"init", o_.rank, o_.size, o_.backend, o_.timeoutMs}).Value());
      return;
    }
    target_->store_ = g_.store;
    target_->pg_ = g_.pg;
    target_->rank_ = o_.rank;
    target_->size_ = o_.size;
    target_->backend_ = o_.backend;
    target_->timeoutMs_ = o_.timeoutMs;
    target_->storeHost_ = o_.storeHost;
    // rank 0 serves the store only without torchrun's agent (storePrefix empty), and only then waits
    if (g_.store && !o_.storeHost && o_.storePrefix.empty()) target_->watch_ = LateFailureWatch::start(g_.store, o_.rank, o_.size);
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error&) override {
    target_->initialising_ = false;
    std::string hint = o_.storeHost ? "" : " (is rank 0 / the store host at " + o_.masterAddr + ":" + std::to_string(o_.masterPort) + " running?)";
    Failure f = failure_;
    if ((f.code == "ERR_DIST_PEER" || f.code == "ERR_DIST") && !f.storeAnswered) f.message += hint;
    deferred_.Reject(distError(Env(), f, Where{"init", o_.rank, o_.size, o_.backend, o_.timeoutMs}).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  ProcessGroupHandle* target_;
  Napi::ObjectReference self_;  // keeps the ProcessGroup object (and target_) alive meanwhile
  InitOptions o_;
  Group g_;
  Failure failure_;
};

Napi::Value ProcessGroupHandle::Init(const Napi::CallbackInfo& info) {
  SEMAIM_GUARD("dist.init", {
    if (pg_ || initialising_) throw std::invalid_argument("this process group is already initialised");
    if (shutDown_) throw std::invalid_argument("this process group was shut down; create a new one");
    InitOptions o = readInitOptions(info[0]);
#ifdef USE_C10D_NCCL
    // The CUDA current device is per thread: set it here, on the thread that issues the collectives.
    if (o.backend == "nccl") c10::cuda::set_device(static_cast<c10::DeviceIndex>(o.device));
#endif
    initialising_ = true;
    auto* w = new InitWorker(info.Env(), this, info.This().As<Napi::Object>(), std::move(o));
    Napi::Promise promise = w->promise();
    w->Queue();
    return promise;
  })
}

// ---------------------------------------------------------------- gradient reducer

#ifdef SEMAIM_C10D_REDUCER
// c10d::Reducer's constructor changed with the libtorch version: 1.x takes the per-bucket size limits
// after the bucket indices; 2.x drops them, later versions append skip_all_reduce_unused_params,
// use_python_reducer, and then bucket_bytes_cap_list (empty: the two caps given). The form that
// compiles is chosen here, so no version numbers need to be known.
template <typename R = c10d::Reducer>
R* newReducer(const std::vector<at::Tensor>& params, const std::vector<std::vector<size_t>>& buckets,
              const std::vector<size_t>& limits, const c10::intrusive_ptr<c10d::ProcessGroup>& pg, int64_t cap,
              bool findUnused, int64_t first) {
  using Tensors = std::vector<at::Tensor>;
  using Buckets = std::vector<std::vector<size_t>>;
  using Group = c10::intrusive_ptr<c10d::ProcessGroup>;
  using Names = std::unordered_map<size_t, std::string>;
  std::vector<bool> sparse(params.size(), false);
  const bool viewBuckets = false;  // gradient_as_bucket_view
  if constexpr (std::is_constructible_v<R, Tensors, Buckets, std::vector<size_t>, Group, std::vector<bool>, int64_t, bool,
                                        bool, Names, int64_t>) {
    return new R(params, buckets, limits, pg, sparse, cap, findUnused, viewBuckets, Names{}, first);
  } else if constexpr (std::is_constructible_v<R, Tensors, Buckets, Group, std::vector<bool>, int64_t, bool, bool, Names,
                                               int64_t>) {
    return new R(params, buckets, pg, sparse, cap, findUnused, viewBuckets, Names{}, first);
  } else if constexpr (std::is_constructible_v<R, Tensors, Buckets, Group, std::vector<bool>, int64_t, bool, bool, Names,
                                               int64_t, bool>) {
    return new R(params, buckets, pg, sparse, cap, findUnused, viewBuckets, Names{}, first, false);
  } else if constexpr (std::is_constructible_v<R, Tensors, Buckets, Group, std::vector<bool>, int64_t, bool, bool, Names,
                                               int64_t, bool, bool>) {
    return new R(params, buckets, pg, sparse, cap, findUnused, viewBuckets, Names{}, first, false, false);
  } else {
    return new R(params, buckets, pg, sparse, cap, findUnused, viewBuckets, Names{}, first, false, false,
                 std::vector<int64_t>{});
  }
}

// DDP's fp16_compress_hook (and its bf16 twin): each bucket is cast to the half type, divided by the
// world size before the sum (so that the sum cannot overflow), all-reduced, and cast back into the
// bucket. Half the bytes on the wire; the gradients lose the precision the half type lacks.
// (On CommHookInterface itself: CppCommHookInterface's parseHookResult calls a function Debian's 1.13
// does not export.)
class HalfCompressHook : public c10d::CommHookInterface {
 public:
  HalfCompressHook(const c10::intrusive_ptr<c10d::ProcessGroup>& pg, at::ScalarType type) : state_(pg), type_(type) {}

  c10::intrusive_ptr<c10::ivalue::Future> runHook(c10d::GradBucket& bucket) override {
    at::Tensor compressed = bucket.getBufferRef().to(type_);
    compressed.div_(state_->getSize());
    std::vector<at::Tensor> tensors = {compressed};
    auto reduced = state_->allreduce(tensors)->getFuture();
    at::Tensor buffer = bucket.getBufferRef();
    auto decompress = [buffer](c10::ivalue::Future& f) {
      buffer.copy_(f.value().toTensorVector()[0]);
      return c10::IValue(buffer);
    };
    return reduced->then(decompress, reduced->elementType());
  }

  at::Tensor parseHookResult(const c10::IValue& result) override { return result.isTensor() ? result.toTensor() : result.toTensorVector()[0]; }

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> state_;
  at::ScalarType type_;
};

// c10d::Reducer over a list of parameters: hooks on their gradient accumulators copy each gradient
// into a flat bucket as soon as autograd has produced it, and each full bucket is all-reduced (sum of
// gradient / world size) while backward goes on; at the end of backward the averaged buckets are
// copied back into the gradients. prepareBackward() arms it for the next backward (DDP's forward
// does the same); a backward without it (gradient accumulation) leaves the gradients local.
class GradReducerHandle : public Napi::ObjectWrap<GradReducerHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "GradReducer",
                       {InstanceMethod("prepareForward", &GradReducerHandle::PrepareForward),
                        InstanceMethod("prepareBackward", &GradReducerHandle::PrepareBackward),
                        InstanceMethod("buckets", &GradReducerHandle::Buckets), InstanceMethod("compress", &GradReducerHandle::Compress),
                        InstanceMethod("dispose", &GradReducerHandle::Dispose)});
  }

  // new GradReducer(group, params, bucketCapBytes, firstBucketCapBytes, findUnusedParameters)
  explicit GradReducerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GradReducerHandle>(info) {
    SEMAIM_GUARD("dist.GradReducer", {
      ProcessGroupHandle* g = ProcessGroupHandle::from(info[0], "GradReducer");
      auto pg = g->group("GradReducer");
      where_ = g->where("gradReducer");
      std::vector<at::Tensor> params = argTensorList(info, 1);
      int64_t cap = argInt(info, 2), first = argInt(info, 3);
      bool findUnused = argBool(info, 4);
      if (params.empty()) throw std::invalid_argument("no parameters");
      for (size_t i = 0; i < params.size(); i++) {
        if (!params[i].requires_grad() || !params[i].is_leaf())
          throw std::invalid_argument("parameter " + std::to_string(i) + " is not a leaf tensor that requires grad");
      }
      if (cap < 1 || first < 1) throw std::invalid_argument("bucket sizes must be positive");
      try {
        // Every rank must hold the same parameters (count, shapes, dtypes): checked with one allgather.
        c10d::verify_params_across_processes(pg, params, c10::nullopt);
        // As DDP: buckets of ~cap bytes (the first, smaller one starts the all-reduce early) over the
        // parameters in reverse order, the order in which backward produces their gradients. After the
        // first backward the Reducer rebuilds them in the order actually observed.
        auto assignment = c10d::compute_bucket_assignment_by_size(params, {static_cast<size_t>(first), static_cast<size_t>(cap)},
                                                                  std::vector<bool>(params.size(), false));
        auto& indices = std::get<0>(assignment);
        auto& limits = std::get<1>(assignment);
        buckets_.assign(indices.rbegin(), indices.rend());
        std::vector<size_t> limitsRev(limits.rbegin(), limits.rend());
        pg_ = pg;
        reducer_ = newReducer(params, buckets_, limitsRev, pg, cap, findUnused, first);
      } catch (const Napi::Error&) {
        throw;
      } catch (...) {
        throw distError(info.Env(), currentFailure(), where_);
      }
    })
  }

  ~GradReducerHandle() override { release(); }

 private:
  c10d::Reducer& reducer(const char* op) {
    if (reducer_ == nullptr) throw std::invalid_argument("the gradient reducer was disposed");
    return *reducer_;
  }

  // Before the forward pass of a step whose gradients are synchronised: rebuilds the buckets once
  // (after the first backward; a broadcast from rank 0 so that every rank uses the same buckets).
  Napi::Value PrepareForward(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("GradReducer.prepareForward", {
      c10d::Reducer& r = reducer("prepareForward");
      try {
        if (argBool(info, 0)) r.prepare_for_forward();
        r.rebuild_buckets();
      } catch (...) {
        Where w = where_;
        w.op = "gradReducer.rebuildBuckets";
        throw distError(info.Env(), currentFailure(), w);
      }
      return info.Env().Undefined();
    })
  }

  // prepareBackward(outputs): arms the hooks for the next backward. outputs (the loss) are searched
  // for unused parameters when the reducer was made with findUnusedParameters.
  Napi::Value PrepareBackward(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("GradReducer.prepareBackward", {
      c10d::Reducer& r = reducer("prepareBackward");
      std::vector<at::Tensor> outputs = info.Length() > 0 && !info[0].IsUndefined() ? argTensorList(info, 0) : std::vector<at::Tensor>{};
      r.prepare_for_backward(outputs);
      return info.Env().Undefined();
    })
  }

  // compress(dtype): all-reduce every bucket in 'float16' or 'bfloat16' (HalfCompressHook). Before the
  // first backward, once.
  Napi::Value Compress(const Napi::CallbackInfo& info) {
    SEMAIM_GUARD("GradReducer.compress", {
      c10d::Reducer& r = reducer("compress");
      at::ScalarType type = argDtype(info, 0);
      if (type != at::kHalf && type != at::kBFloat16) throw std::invalid_argument("gradient compression takes float16 or bfloat16");
      r.register_comm_hook(std::make_unique<HalfCompressHook>(pg_, type));
      return info.Env().Undefined();
    })
  }

  // The initial bucket assignment (parameter indices per bucket, in all-reduce order).
  Napi::Value Buckets(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env, buckets_.size());
    for (size_t b = 0; b < buckets_.size(); b++) {
      Napi::Array a = Napi::Array::New(env, buckets_[b].size());
      for (size_t k = 0; k < buckets_[b].size(); k++) a.Set(k, Napi::Number::New(env, static_cast<double>(buckets_[b][k])));
      out.Set(b, a);
    }
    return out;
  }

  // Removes the gradient hooks and releases the process group reference. Idempotent.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    release();
    return info.Env().Undefined();
  }

  void release() {
    c10d::Reducer* r = reducer_;
    reducer_ = nullptr;
    try {
      delete r;  // ~Reducer is noexcept(false): it asserts while removing its hooks
    } catch (...) {
    }
    pg_.reset();
  }

  c10d::Reducer* reducer_ = nullptr;
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  std::vector<std::vector<size_t>> buckets_;
  Where where_;
};
#endif

}  // namespace

#endif  // SEMAIM_C10D

void registerDistHandles(Napi::Env env, Napi::Object exports) {
#ifdef SEMAIM_C10D
  exports.Set("ProcessGroup", ProcessGroupHandle::Define(env));
#ifdef SEMAIM_C10D_REDUCER
  exports.Set("GradReducer", GradReducerHandle::Define(env));
#endif
#endif
}

}  // namespace semaim

#include "generated/dist.inc"
