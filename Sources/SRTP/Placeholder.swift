public enum SRTPModule {}
