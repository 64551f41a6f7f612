/* edgeq test stub, not TensorFlow Lite Micro: see tests/stubs/README.md.
 * TFLM's cortex_m_generic port prints nothing until the application registers a
 * callback; the stub keeps the callback where a test can look at it. */
#ifndef EDGEQ_STUB_TENSORFLOW_LITE_MICRO_CORTEX_M_GENERIC_DEBUG_LOG_CALLBACK_H_
#define EDGEQ_STUB_TENSORFLOW_LITE_MICRO_CORTEX_M_GENERIC_DEBUG_LOG_CALLBACK_H_

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*DebugLogCallback)(const char* s);

#ifdef __cplusplus
/* Defined inline (C++ only) so a host program links without a TFLM library. */
inline DebugLogCallback* EdgeqStubDebugLogCallback() {
  static DebugLogCallback callback = nullptr;
  return &callback;
}

inline void RegisterDebugLogCallback(DebugLogCallback callback) { *EdgeqStubDebugLogCallback() = callback; }
#else
void RegisterDebugLogCallback(DebugLogCallback callback);
#endif

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* EDGEQ_STUB_TENSORFLOW_LITE_MICRO_CORTEX_M_GENERIC_DEBUG_LOG_CALLBACK_H_ */
