"""bgm2pose.app"""
