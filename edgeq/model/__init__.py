"""The model and its data, as edgeq reads them: loading Keras 3 / tf_keras / SavedModel /
.tflite into one ``LoadedModel`` (``loading``), the Keras 3 → tf_keras bridge QAT needs
(``keras_bridge``), the SavedModel the converter reads (``export``), the checked .tflite
reader (``tflite_info`` with ``tflite_checks``), and calibration / evaluation data
(``calibration`` over ``data_files``). Everything above builds on these; nothing here
imports quantization, checks or firmware.
"""
