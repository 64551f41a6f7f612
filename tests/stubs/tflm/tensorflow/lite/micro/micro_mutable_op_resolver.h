// edgeq test stub, not TensorFlow Lite Micro: see tests/stubs/README.md.
// MicroMutableOpResolver<N> with exactly the Add*() methods of edgeq/data/tflm_ops.toml
// (tests/test_runner_stubs.py keeps the two in sync), each without arguments: that is
// how edgeq's op resolver header calls them. Like TFLM, adding more than N operators or
// the same one twice returns kTfLiteError.
#ifndef EDGEQ_STUB_TENSORFLOW_LITE_MICRO_MICRO_MUTABLE_OP_RESOLVER_H_
#define EDGEQ_STUB_TENSORFLOW_LITE_MICRO_MICRO_MUTABLE_OP_RESOLVER_H_

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tflite {

template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
  static_assert(tOpCount > 0, "a model has at least one operator");

  MicroMutableOpResolver() {}
  MicroMutableOpResolver(const MicroMutableOpResolver&) = delete;
  MicroMutableOpResolver& operator=(const MicroMutableOpResolver&) = delete;

  unsigned int GetRegistrationLength() const { return registrations_len_; }
  unsigned int EdgeqStubRegisteredOps() const override { return registrations_len_; }

  // One line per method, sorted by name; a new TFLM operator is one more line.
  // clang-format off
  [[nodiscard]] TfLiteStatus AddAbs() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddAdd() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddAddN() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddArgMax() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddArgMin() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddAssignVariable() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddAveragePool2D() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddBatchMatMul() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddBatchToSpaceNd() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddBroadcastArgs() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddBroadcastTo() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddCallOnce() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddCast() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddCeil() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddCircularBuffer() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddConcatenation() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddConv2D() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddCos() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddCumSum() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddDecode() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddDelay() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddDepthToSpace() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddDepthwiseConv2D() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddDequantize() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddDetectionPostprocess() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddDiv() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddDynamicUpdateSlice() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddElu() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddEmbeddingLookup() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddEnergy() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddEqual() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddEthosU() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddExp() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddExpandDims() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFftAutoScale() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFill() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFilterBank() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFilterBankLog() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFilterBankSpectralSubtraction() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFilterBankSquareRoot() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFloor() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFloorDiv() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFloorMod() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFramer() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddFullyConnected() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddGather() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddGatherNd() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddGreater() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddGreaterEqual() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddHardSwish() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddIf() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddIrfft() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddL2Normalization() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddL2Pool2D() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddLeakyRelu() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddLess() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddLessEqual() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddLog() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddLogSoftmax() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddLogicalAnd() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddLogicalNot() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddLogicalOr() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddLogistic() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddMaxPool2D() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddMaximum() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddMean() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddMinimum() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddMirrorPad() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddMul() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddNeg() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddNotEqual() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddOverlapAdd() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddPCAN() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddPack() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddPad() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddPadV2() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddPrelu() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddQuantize() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddReadVariable() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddReduceAll() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddReduceMax() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddReduceMin() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddRelu() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddRelu6() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddReshape() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddResizeBilinear() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddResizeNearestNeighbor() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddReverseV2() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddRfft() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddRound() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddRsqrt() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSelectV2() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddShape() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSin() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSlice() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSoftmax() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSpaceToBatchNd() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSpaceToDepth() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSplit() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSplitV() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSqrt() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSquare() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSquaredDifference() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSqueeze() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddStacker() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddStridedSlice() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSub() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSum() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddSvdf() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddTanh() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddTranspose() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddTransposeConv() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddUnidirectionalSequenceLSTM() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddUnpack() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddVarHandle() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddWhile() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddWindow() { return Register(__LINE__); }
  [[nodiscard]] TfLiteStatus AddZerosLike() { return Register(__LINE__); }

  // clang-format on

 private:
  // An operator is identified by the line of its Add*() method: unique, no numbering by hand.
  TfLiteStatus Register(int line) {
    const unsigned int op = static_cast<unsigned int>(line);
    if (registrations_len_ >= tOpCount) return kTfLiteError;  // TFLM: "Couldn't register builtin op"
    for (unsigned int i = 0; i < registrations_len_; ++i) {
      if (registered_[i] == op) return kTfLiteError;  // TFLM: "... the same op more than once"
    }
    registered_[registrations_len_++] = op;
    return kTfLiteOk;
  }

  unsigned int registered_[tOpCount] = {};
  unsigned int registrations_len_ = 0;
};

}  // namespace tflite

#endif  // EDGEQ_STUB_TENSORFLOW_LITE_MICRO_MICRO_MUTABLE_OP_RESOLVER_H_
