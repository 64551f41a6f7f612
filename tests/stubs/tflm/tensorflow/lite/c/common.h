/* edgeq test stub, not TensorFlow Lite Micro: see tests/stubs/README.md. */
#ifndef EDGEQ_STUB_TENSORFLOW_LITE_C_COMMON_H_
#define EDGEQ_STUB_TENSORFLOW_LITE_C_COMMON_H_

#include "tensorflow/lite/core/c/common.h"

#endif /* EDGEQ_STUB_TENSORFLOW_LITE_C_COMMON_H_ */
