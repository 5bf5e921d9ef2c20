public enum DTLSModule {}
