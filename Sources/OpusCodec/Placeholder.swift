public enum OpusCodecModule {}
