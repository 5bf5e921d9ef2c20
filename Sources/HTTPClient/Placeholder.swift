public enum HTTPClientModule {}
