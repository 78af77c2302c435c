// Loaded with --require into the benchmark worker by kernel-profile.test.ts: a profiler that cannot start
// (as on a machine without CUPTI).
import { native } from '../../src/torch/native';

(native as unknown as { profilerStart: () => void }).profilerStart = () => {
  throw new Error('the profiler cannot start here');
};
