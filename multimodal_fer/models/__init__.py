"""Pure ``nn.Module`` models (no Lightning): encoders, fusion, heads and the multimodal FER model."""
