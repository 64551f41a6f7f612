// edgeq test stub, not TensorFlow Lite Micro: see tests/stubs/README.md.
#ifndef EDGEQ_STUB_TENSORFLOW_LITE_MICRO_SYSTEM_SETUP_H_
#define EDGEQ_STUB_TENSORFLOW_LITE_MICRO_SYSTEM_SETUP_H_

namespace tflite {

// TFLM declares it and each port defines it; the stub's definition is empty and inline,
// so generated code that defined it too would not compile.
inline void InitializeTarget() {}

}  // namespace tflite

#endif  // EDGEQ_STUB_TENSORFLOW_LITE_MICRO_SYSTEM_SETUP_H_
