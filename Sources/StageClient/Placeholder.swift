public enum StageClientModule {}
