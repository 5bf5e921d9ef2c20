public enum StageMediaModule {}
