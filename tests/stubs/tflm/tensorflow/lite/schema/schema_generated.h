// edgeq test stub, not TensorFlow Lite Micro: see tests/stubs/README.md.
// tflite::Model and tflite::GetModel() as the FlatBuffers-generated schema declares them,
// reading the real .tflite flatbuffer: enough for version() and, in the stub interpreter,
// subgraph 0's input/output tensors. (TFLITE_SCHEMA_VERSION is in micro_interpreter.h,
// as in TFLM.)
#ifndef EDGEQ_STUB_TENSORFLOW_LITE_SCHEMA_SCHEMA_GENERATED_H_
#define EDGEQ_STUB_TENSORFLOW_LITE_SCHEMA_SCHEMA_GENERATED_H_

#include <cstddef>
#include <cstdint>

namespace tflite {

enum TensorType : int8_t {
  TensorType_FLOAT32 = 0,
  TensorType_FLOAT16 = 1,
  TensorType_INT32 = 2,
  TensorType_UINT8 = 3,
  TensorType_INT64 = 4,
  TensorType_STRING = 5,
  TensorType_BOOL = 6,
  TensorType_INT16 = 7,
  TensorType_COMPLEX64 = 8,
  TensorType_INT8 = 9,
  TensorType_FLOAT64 = 10,
  TensorType_COMPLEX128 = 11,
  TensorType_UINT64 = 12,
  TensorType_RESOURCE = 13,
  TensorType_VARIANT = 14,
  TensorType_UINT32 = 15,
  TensorType_UINT16 = 16,
  TensorType_INT4 = 17,
  TensorType_BFLOAT16 = 18
};

namespace edgeq_stub {

// Little-endian scalar reads that need neither alignment nor <cstring>.
inline uint32_t ReadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

inline uint16_t ReadU16(const uint8_t* p) {
  return static_cast<uint16_t>(static_cast<uint16_t>(p[0]) | (static_cast<uint16_t>(p[1]) << 8));
}

// The object a FlatBuffers offset stored at `p` points to.
inline const uint8_t* Deref(const uint8_t* p) { return p + ReadU32(p); }

// Field `index` (declaration order) of the table at `table`, or nullptr when absent.
inline const uint8_t* Field(const uint8_t* table, unsigned index) {
  const int32_t to_vtable = static_cast<int32_t>(ReadU32(table));
  const uint8_t* vtable = table - to_vtable;
  const unsigned slot = 4u + 2u * index;
  if (slot + 2u > ReadU16(vtable)) return nullptr;
  const uint16_t offset = ReadU16(vtable + slot);
  return offset == 0 ? nullptr : table + offset;
}

// Element `i` of a vector of tables (a vector holds its length, then offsets).
inline const uint8_t* TableAt(const uint8_t* vector, uint32_t i) { return Deref(vector + 4u + 4u * i); }

}  // namespace edgeq_stub

// A view of the flatbuffer: never constructed or copied, only reached through GetModel().
struct Model final {
  Model() = delete;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  uint32_t version() const {
    const uint8_t* field = edgeq_stub::Field(bytes(), 0);
    return field == nullptr ? 0u : edgeq_stub::ReadU32(field);
  }

  // Stub only: the table's bytes, for the stub interpreter.
  const uint8_t* bytes() const { return reinterpret_cast<const uint8_t*>(this); }
};

inline const Model* GetModel(const void* buf) {
  const uint8_t* root = static_cast<const uint8_t*>(buf);
  return reinterpret_cast<const Model*>(edgeq_stub::Deref(root));
}

}  // namespace tflite

#endif  // EDGEQ_STUB_TENSORFLOW_LITE_SCHEMA_SCHEMA_GENERATED_H_
