public enum LocalRunModule {}
