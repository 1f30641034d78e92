"""bgm2pose.models"""
