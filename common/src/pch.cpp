// Anchor for the precompiled header (common/include/llm/common/pch.h); holds no code.
