public enum MixerModule {}
