"""The front end: from a photo or a video frame to the runtime's inputs.

Faces are found and their dense landmarks read with MediaPipe's face detector and face mesh
(TensorFlow Lite files shipped in :mod:`s3pot.frontend.models`, run by Google's LiteRT, the
``face`` extra); each face is aligned to a square crop by the FFHQ convention with the inverse
transform kept for paste-back, a 12-class parsing mask is drawn from the landmarks, and a
reference comes from a clean photo of the same person, a user's ONNX generator or files made
elsewhere. Nothing here needs torch.
"""
