public enum AWSCoreModule {}
