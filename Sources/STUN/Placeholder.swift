public enum STUNModule {}
