public enum ICEModule {}
