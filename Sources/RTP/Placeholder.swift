public enum RTPModule {}
