public enum TracklistModule {}
