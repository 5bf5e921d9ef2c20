public enum SDPModule {}
