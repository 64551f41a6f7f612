/* edgeq test stub, not TensorFlow Lite Micro: see tests/stubs/README.md.
 * TfLiteStatus and TfLiteType with TFLM's names and values (TFLM puts them in
 * tensorflow/lite/core/c/c_api_types.h and compiler/mlir/lite/core/c/tflite_types.h). */
#ifndef EDGEQ_STUB_TENSORFLOW_LITE_CORE_C_C_API_TYPES_H_
#define EDGEQ_STUB_TENSORFLOW_LITE_CORE_C_C_API_TYPES_H_

#ifdef __cplusplus
extern "C" {
#endif

typedef enum TfLiteStatus {
  kTfLiteOk = 0,
  kTfLiteError = 1,
  kTfLiteDelegateError = 2,
  kTfLiteApplicationError = 3,
  kTfLiteDelegateDataNotFound = 4,
  kTfLiteDelegateDataWriteError = 5,
  kTfLiteDelegateDataReadError = 6,
  kTfLiteUnresolvedOps = 7,
  kTfLiteCancelled = 8,
  kTfLiteOutputShapeNotKnown = 9
} TfLiteStatus;

typedef enum {
  kTfLiteNoType = 0,
  kTfLiteFloat32 = 1,
  kTfLiteInt32 = 2,
  kTfLiteUInt8 = 3,
  kTfLiteInt64 = 4,
  kTfLiteString = 5,
  kTfLiteBool = 6,
  kTfLiteInt16 = 7,
  kTfLiteComplex64 = 8,
  kTfLiteInt8 = 9,
  kTfLiteFloat16 = 10,
  kTfLiteFloat64 = 11,
  kTfLiteComplex128 = 12,
  kTfLiteUInt64 = 13,
  kTfLiteResource = 14,
  kTfLiteVariant = 15,
  kTfLiteUInt32 = 16,
  kTfLiteUInt16 = 17,
  kTfLiteInt4 = 18,
  kTfLiteBFloat16 = 19
} TfLiteType;

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* EDGEQ_STUB_TENSORFLOW_LITE_CORE_C_C_API_TYPES_H_ */
