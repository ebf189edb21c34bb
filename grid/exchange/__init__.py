"""Exchange (对接与共享): what the platform sends to and receives from other systems — events
out (webhooks, CloudEvents), results back to the 12345 hotline (回单), feeds in (1+N 多源),
residents' declarations (自主申报), open data (数据开放) and break-the-glass (紧急授权)."""
