public enum DynamoDBModule {}
