// edgeq test stub, not TensorFlow Lite Micro: see tests/stubs/README.md.
#ifndef EDGEQ_STUB_TENSORFLOW_LITE_MICRO_MICRO_OP_RESOLVER_H_
#define EDGEQ_STUB_TENSORFLOW_LITE_MICRO_MICRO_OP_RESOLVER_H_

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tflite {

// The interface the interpreter takes (TFLM's has FindOp()/GetOpDataParser() here).
class MicroOpResolver {
 public:
  virtual ~MicroOpResolver() {}

  // Stub only: how many operators were registered (the stub interpreter refuses none).
  virtual unsigned int EdgeqStubRegisteredOps() const = 0;
};

}  // namespace tflite

#endif  // EDGEQ_STUB_TENSORFLOW_LITE_MICRO_MICRO_OP_RESOLVER_H_
