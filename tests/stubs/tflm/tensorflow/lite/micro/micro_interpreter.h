// edgeq test stub, not TensorFlow Lite Micro: see tests/stubs/README.md.
// tflite::MicroInterpreter with TFLM's constructor and the calls edgeq's runner makes.
// It runs nothing: AllocateTensors() places subgraph 0's input and output tensors
// (types and shapes read from the model), zero-filled, in the caller's arena, and
// Invoke() leaves them as they are.
#ifndef EDGEQ_STUB_TENSORFLOW_LITE_MICRO_MICRO_INTERPRETER_H_
#define EDGEQ_STUB_TENSORFLOW_LITE_MICRO_MICRO_INTERPRETER_H_

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/c/c_api_types.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#define TFLITE_SCHEMA_VERSION (3)

namespace tflite {

class MicroResourceVariables;
class MicroProfilerInterface;

class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver,
                   uint8_t* tensor_arena, size_t tensor_arena_size,
                   MicroResourceVariables* resource_variables = nullptr,
                   MicroProfilerInterface* profiler = nullptr,
                   bool preserve_all_tensors = false)
      : model_(model), op_resolver_(op_resolver), arena_(tensor_arena), arena_size_(tensor_arena_size) {
    (void)resource_variables;
    (void)profiler;
    (void)preserve_all_tensors;
  }

  // Stricter than TFLM: the arena is exactly `uint8_t*` and its size exactly `size_t`
  // (no silent int/unsigned conversions of an arena size).
  template <typename Arena, typename Size>
  MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver, Arena* tensor_arena,
                   Size tensor_arena_size, MicroResourceVariables* resource_variables = nullptr,
                   MicroProfilerInterface* profiler = nullptr, bool preserve_all_tensors = false) = delete;

  ~MicroInterpreter() {}

  MicroInterpreter(const MicroInterpreter&) = delete;
  MicroInterpreter& operator=(const MicroInterpreter&) = delete;

  [[nodiscard]] TfLiteStatus AllocateTensors() {
#ifdef EDGEQ_STUB_FAIL_ALLOCATE
    return kTfLiteError;
#else
    if (model_ == nullptr || model_->version() != TFLITE_SCHEMA_VERSION) return kTfLiteError;
    if (arena_ == nullptr || op_resolver_.EdgeqStubRegisteredOps() == 0u) return kTfLiteError;
    used_ = 0;
    const uint8_t* subgraphs = edgeq_stub::Field(model_->bytes(), 2);
    if (subgraphs == nullptr) return kTfLiteError;
    subgraphs = edgeq_stub::Deref(subgraphs);
    if (edgeq_stub::ReadU32(subgraphs) == 0u) return kTfLiteError;
    const uint8_t* subgraph = edgeq_stub::TableAt(subgraphs, 0);
    if (Place(subgraph, 1, inputs_, &inputs_size_) != kTfLiteOk) return kTfLiteError;
    if (Place(subgraph, 2, outputs_, &outputs_size_) != kTfLiteOk) return kTfLiteError;
    allocated_ = true;
    return kTfLiteOk;
#endif
  }

  [[nodiscard]] TfLiteStatus Invoke() {
#ifdef EDGEQ_STUB_FAIL_INVOKE
    return kTfLiteError;
#else
    return allocated_ ? kTfLiteOk : kTfLiteError;
#endif
  }

  TfLiteTensor* input(size_t index) { return allocated_ && index < inputs_size_ ? &inputs_[index] : nullptr; }
  size_t inputs_size() const { return inputs_size_; }
  TfLiteTensor* output(size_t index) { return allocated_ && index < outputs_size_ ? &outputs_[index] : nullptr; }
  size_t outputs_size() const { return outputs_size_; }

  TfLiteStatus initialization_status() const { return kTfLiteOk; }

  // Bytes of the arena the stub's tensors (and their dims) occupy.
  size_t arena_used_bytes() const { return used_; }

 private:
  static constexpr size_t kMaxIo = 8;
  static constexpr size_t kMaxDims = 8;

  // Sets up the tensors a subgraph field lists (1 = inputs, 2 = outputs).
  TfLiteStatus Place(const uint8_t* subgraph, unsigned field, TfLiteTensor* tensors, size_t* count) {
    const uint8_t* all = edgeq_stub::Field(subgraph, 0);
    const uint8_t* indices = edgeq_stub::Field(subgraph, field);
    if (all == nullptr || indices == nullptr) return kTfLiteError;
    all = edgeq_stub::Deref(all);
    indices = edgeq_stub::Deref(indices);
    const uint32_t n = edgeq_stub::ReadU32(indices);
    if (n > kMaxIo) return kTfLiteError;
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t index = edgeq_stub::ReadU32(indices + 4u + 4u * i);
      if (index >= edgeq_stub::ReadU32(all)) return kTfLiteError;
      if (Tensor(edgeq_stub::TableAt(all, index), &tensors[i]) != kTfLiteOk) return kTfLiteError;
    }
    *count = n;
    return kTfLiteOk;
  }

  TfLiteStatus Tensor(const uint8_t* table, TfLiteTensor* tensor) {
    int8_t schema_type = 0;  // TensorType_FLOAT32, the schema's default
    if (const uint8_t* type = edgeq_stub::Field(table, 1)) schema_type = static_cast<int8_t>(*type);
    size_t item = 0;
    const TfLiteType type = Type(schema_type, &item);
    if (item == 0) return kTfLiteError;
    int32_t dims[kMaxDims] = {};
    uint32_t rank = 0;
    size_t elements = 1;
    if (const uint8_t* shape = edgeq_stub::Field(table, 0)) {
      shape = edgeq_stub::Deref(shape);
      rank = edgeq_stub::ReadU32(shape);
      if (rank > kMaxDims) return kTfLiteError;
      for (uint32_t d = 0; d < rank; ++d) {
        dims[d] = static_cast<int32_t>(edgeq_stub::ReadU32(shape + 4u + 4u * d));
        if (dims[d] < 0) return kTfLiteError;
        elements *= static_cast<size_t>(dims[d]);
      }
    }
    uint8_t* data = Take(elements * item, 16);
    uint8_t* dims_bytes = Take(sizeof(int) * (rank + 1u), alignof(TfLiteIntArray));
    if (data == nullptr || dims_bytes == nullptr) return kTfLiteError;
    TfLiteIntArray* array = reinterpret_cast<TfLiteIntArray*>(dims_bytes);
    array->size = static_cast<int>(rank);
    int* dim_values = &array->data[0];
    for (uint32_t d = 0; d < rank; ++d) dim_values[d] = dims[d];
    *tensor = TfLiteTensor();
    tensor->data.raw = reinterpret_cast<char*>(data);
    tensor->dims = array;
    tensor->bytes = elements * item;
    tensor->type = type;
    tensor->allocation_type = kTfLiteArenaRw;
    return kTfLiteOk;
  }

  // Zero-filled, aligned bytes from the arena; nullptr when it is too small.
  uint8_t* Take(size_t bytes, size_t align) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(arena_);
    const uintptr_t start = (base + used_ + align - 1u) / align * align;
    const size_t end = static_cast<size_t>(start - base) + bytes;
    if (end > arena_size_) return nullptr;
    used_ = end;
    uint8_t* out = arena_ + (start - base);
    for (size_t i = 0; i < bytes; ++i) out[i] = 0;
    return out;
  }

  static TfLiteType Type(int8_t schema_type, size_t* item) {
    switch (schema_type) {
      case TensorType_FLOAT32: *item = 4; return kTfLiteFloat32;
      case TensorType_FLOAT16: *item = 2; return kTfLiteFloat16;
      case TensorType_INT32: *item = 4; return kTfLiteInt32;
      case TensorType_UINT8: *item = 1; return kTfLiteUInt8;
      case TensorType_INT64: *item = 8; return kTfLiteInt64;
      case TensorType_BOOL: *item = 1; return kTfLiteBool;
      case TensorType_INT16: *item = 2; return kTfLiteInt16;
      case TensorType_INT8: *item = 1; return kTfLiteInt8;
      case TensorType_FLOAT64: *item = 8; return kTfLiteFloat64;
      case TensorType_UINT64: *item = 8; return kTfLiteUInt64;
      case TensorType_UINT32: *item = 4; return kTfLiteUInt32;
      case TensorType_UINT16: *item = 2; return kTfLiteUInt16;
      default: *item = 0; return kTfLiteNoType;
    }
  }

  const Model* model_;
  const MicroOpResolver& op_resolver_;
  uint8_t* arena_;
  size_t arena_size_;
  size_t used_ = 0;
  bool allocated_ = false;
  TfLiteTensor inputs_[kMaxIo] = {};
  TfLiteTensor outputs_[kMaxIo] = {};
  size_t inputs_size_ = 0;
  size_t outputs_size_ = 0;
};

}  // namespace tflite

#endif  // EDGEQ_STUB_TENSORFLOW_LITE_MICRO_MICRO_INTERPRETER_H_
