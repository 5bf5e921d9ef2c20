public enum RoutingModule {}
