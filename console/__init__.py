"""指挥中心工作台: the street office's console, a browser app served under /console."""
