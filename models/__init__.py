"""PyTorch definitions of S3POT: SAM's parts written for export, TinyViT, FE, SA, the pipeline
module, the variant registry and checkpoint / adapter loading."""
from .checkpoint import guess_variant, load_adapter, load_sam_checkpoint, read_adapter, save_adapter
from .registry import VARIANTS, VariantConfig, build_s3pot, get_variant
from .s3pot import S3POT, S3POTOutput
from .stages import STAGE_MODULES, DecoderStage, EncoderStage, FEStage, SAStage
