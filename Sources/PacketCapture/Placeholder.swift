public enum PacketCaptureModule {}
