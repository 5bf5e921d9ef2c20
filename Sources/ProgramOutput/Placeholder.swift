public enum ProgramOutputModule {}
