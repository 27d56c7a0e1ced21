"""Making a trained model smaller or faster: its inference form (RepVGG fused, plain
BatchNorm), int8 quantization through torchao's PT2E flow, and knowledge distillation."""
