"""bgm2pose.sensing"""
