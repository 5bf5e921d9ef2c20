public enum JitterBufferModule {}
