"""Resident services (便民服务): catalogue, 办事指南, slots, bookings and requests."""
