/* edgeq test stub, not TensorFlow Lite Micro: see tests/stubs/README.md. */
#ifndef EDGEQ_STUB_TENSORFLOW_LITE_C_C_API_TYPES_H_
#define EDGEQ_STUB_TENSORFLOW_LITE_C_C_API_TYPES_H_

#include "tensorflow/lite/core/c/c_api_types.h"

#endif /* EDGEQ_STUB_TENSORFLOW_LITE_C_C_API_TYPES_H_ */
